"""`python -m redisops ...`"""

from redisops.cli import main

main()
