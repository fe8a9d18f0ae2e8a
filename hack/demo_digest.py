"""Demo helper: summarise the app's objects (stdin: kubectl JSON list), or diff against a summary."""

import json
import sys

items = json.load(sys.stdin)["items"]
now = {}
for item in items:
    name = item["metadata"]["name"]
    if name.startswith(("rc-snap-", "rc-guards-", "rc-isolations")):
        continue
    content = {"data": item.get("data"), "replicas": (item.get("spec") or {}).get("replicas"),
               "annotations": ((item.get("spec") or {}).get("template") or {}).get("metadata", {}).get("annotations"),
               "podSelector": (item.get("spec") or {}).get("podSelector") if item["kind"] == "NetworkPolicy" else None}
    now[f"{item['kind']}/{name}"] = content
if len(sys.argv) > 2 and sys.argv[1] == "--diff":
    before = json.load(open(sys.argv[2]))
    for key in sorted(set(now) | set(before)):
        if before.get(key) == now.get(key):
            continue
        if key not in before:
            print(f"  + {key} (created)")
            continue
        old, new = before[key], now.get(key) or {}
        for field in ("data", "replicas", "annotations", "podSelector"):
            if old.get(field) != new.get(field):
                if field == "data":
                    o, n = old["data"] or {}, new["data"] or {}
                    changes = {k: n.get(k) for k in set(o) | set(n) if o.get(k) != n.get(k)}
                    print(f"  ~ {key} data {json.dumps(changes, sort_keys=True)}")
                else:
                    print(f"  ~ {key} {field}: {json.dumps(old.get(field))} -> {json.dumps(new.get(field))}")
else:
    json.dump(now, sys.stdout)
