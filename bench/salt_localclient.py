"""Time Salt's LocalClient.cmd on request; run by the Salt venv's python (nothing of ours).

Usage: python salt_localclient.py MASTER_CONFIG_FILE [TARGET [TIMEOUT]]
Prints "ready" once the client exists; then for every line read from stdin runs
cmd(TARGET, "test.ping") and prints {"seconds": s, "returned": minions that answered True}.
"""

import json
import sys
import time


def main() -> int:
    import salt.client

    config = sys.argv[1]
    target = sys.argv[2] if len(sys.argv) > 2 else "*"
    timeout = int(sys.argv[3]) if len(sys.argv) > 3 else 15
    client = salt.client.LocalClient(c_path=config)
    print("ready", flush=True)
    for _line in sys.stdin:
        begin = time.perf_counter()
        result = client.cmd(target, "test.ping", timeout=timeout)
        seconds = time.perf_counter() - begin
        returned = sum(1 for value in result.values() if value is True)
        print(json.dumps({"seconds": seconds, "returned": returned}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
