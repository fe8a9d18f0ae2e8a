"""An operator process that has done its imports and waits for a line on stdin before it starts.

Crash tests SIGKILL the operator dozens of times; a fresh process spends over a
second importing Kopf and the Kubernetes client. The test keeps the next process
warm (imported, not watching, not writing) while the current one runs.
"""

import sys

from reliability_center.operator.main import run

if __name__ == "__main__":
    if sys.stdin.readline():
        run()
