from racecheck.cli import main

main()
