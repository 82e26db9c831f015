from bizcloud.cli import main

main()
