from sparsify.app.cli import main

main()
