from goalrt.cli import main

main()
