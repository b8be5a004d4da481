from advex.gateway.server import main

main()
