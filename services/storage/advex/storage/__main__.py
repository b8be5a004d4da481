from advex.storage.server import main

main()
