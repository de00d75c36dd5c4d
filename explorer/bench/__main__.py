from explorer.bench.cli import main

main()
