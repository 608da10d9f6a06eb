from goalrt.cli.main import main

main()
