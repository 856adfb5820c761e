#!/usr/bin/env python3
"""Admin API input bounds: POSTs a webhook with 10,000 headers, then 150
webhooks, against the given ringcast binary (its own state_dir, loopback ports); prints the
statuses.

    python3 scripts/api-limits.py target/release/ringcast
"""
import json, os, re, shutil, subprocess, sys, tempfile, time, urllib.request
binary = sys.argv[1]
state = tempfile.mkdtemp()
cfg = tempfile.mktemp(suffix=".toml"); open(cfg, "w").write(f'state_dir = "{state}"\n')
log = tempfile.mktemp()
p = subprocess.Popen([binary, "--config", cfg, "--rtmp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--rtsp-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--shards", "1"], stdout=open(log, "w"), stderr=subprocess.STDOUT)
for _ in range(100):
    m = re.search(r"api=([0-9.:]+)", open(log).read())
    if m: break
    time.sleep(0.1)
base = "http://" + m.group(1)
def post(body):
    req = urllib.request.Request(base + "/api/webhooks", data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"})
    try:
        return urllib.request.urlopen(req).status
    except urllib.error.HTTPError as e:
        return e.code
print("10,000 headers:", post({"url": "http://127.0.0.1:9/x", "headers": [f"X-H{i}: v" for i in range(10000)]}))
codes = [post({"url": f"http://127.0.0.1:9/{i}"}) for i in range(150)]
print("150 API webhooks:", {c: codes.count(c) for c in set(codes)})
p.terminate(); p.wait()
shutil.rmtree(state, ignore_errors=True)
os.unlink(cfg); os.unlink(log)
