from advex.attack.server import main

main()
