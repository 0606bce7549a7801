from darkcfg.cli import main

main()
