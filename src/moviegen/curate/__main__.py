from moviegen.curate.runner import main

main()
