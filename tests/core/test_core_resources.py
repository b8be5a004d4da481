"""Ids, names and page tokens shared by storage and gateway."""

import pytest

from advex.core import resources
from advex.core.errors import InvalidArgument, NotFound


def test_ids_made_in_a_burst_sort_in_creation_order():
    ids = [resources.new_id() for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_names_parse_back_and_bad_ones_say_the_expected_form():
    resource_id = resources.new_id()
    assert resources.parse_name("artifacts", resources.resource_name("artifacts", resource_id)) == resource_id
    with pytest.raises(NotFound, match="artifacts/<id>"):
        resources.parse_name("artifacts", "evaluations/" + resource_id)
    with pytest.raises(InvalidArgument, match="required"):
        resources.parse_name("artifacts", "")


def test_page_tokens_round_trip_and_foreign_ones_are_refused():
    resource_id = resources.new_id()
    assert resources.decode_page_token(resources.encode_page_token(resource_id)) == resource_id
    assert resources.decode_page_token("") is None
    for bad in ("garbage!", "YWJj"):
        with pytest.raises(InvalidArgument, match="page_token"):
            resources.decode_page_token(bad)
    assert resources.page_size(0) == 50 and resources.page_size(5000) == 1000
    with pytest.raises(InvalidArgument):
        resources.page_size(-1)
