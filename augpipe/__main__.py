from augpipe.cli import main

main()
