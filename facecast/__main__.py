from facecast.cli import main

main()
