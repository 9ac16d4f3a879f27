#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ (run once, from any
directory; the files are committed). Sources: the YAML blocks of the
shared seed documents (fenced ```yaml blocks and runs of lines starting at
`apiVersion:`), the repository's YAML test fixtures, and hand-written
inputs for the header-, JSON- and request-shaped targets. The xds_decode
seeds come from the control plane's own output:
`cargo run -p mesh-fuzz --example write_xds_seeds`.
Files are named by the SHA-1 of their content, as libFuzzer names its own."""
import glob, hashlib, html, os, re, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
SEEDS = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/seeds"
MAX_FILE = 64 * 1024


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    if not data or len(data) > MAX_FILE:
        return
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def yaml_blocks(text):
    for m in re.finditer(r"```(?:ya?ml)?[^\n]*\n(.*?)```", text, re.S):
        yield m.group(1)
    lines, block = text.split("\n"), []
    for line in lines + [""]:
        if line.startswith("apiVersion:") or (block and (line.startswith((" ", "-", "\t")) or re.match(r"^[a-zA-Z]+:", line))):
            block.append(line)
        elif block:
            yield "\n".join(block) + "\n"
            block = []


yaml = []
for path in sorted(glob.glob(os.path.join(SEEDS, "*"))):
    text = open(path, encoding="utf-8", errors="replace").read()
    for block in yaml_blocks(text):
        if "kind:" in block:
            yaml.append(block)
            if "&quot;" in block or "&amp;" in block:
                yaml.append(html.unescape(block))
for pattern in ["mesh-control/tests/data/**/*.yaml", "xtask/lab/demo/**/*.yaml",
                "deploy/waypoint/*.yaml", "tests/tests/**/*.yaml"]:
    for path in sorted(glob.glob(os.path.join(ROOT, pattern), recursive=True)):
        yaml.append(open(path, encoding="utf-8", errors="replace").read())
for block in yaml:
    write("istio_yaml", block)
    write("control_translate", block)

for body in [
    '{"cniVersion":"1.0.0","name":"k8s","type":"mesh-cni"}',
    '{"cniVersion":"0.4.0","name":"k8s","type":"mesh-cni","prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/x"}],"ips":[{"address":"10.22.0.5/24","gateway":"10.22.0.1","interface":0}],"dns":{}}}',
    '{"cniVersion":"1.0.0","name":"k8s","type":"mesh-cni","agentSocket":"/var/run/mesh/cni.sock","excludeNamespaces":["kube-system"],"timeoutSeconds":5,"logLevel":"debug"}',
    '{"cniVersion":"9.9.9"}',
    '{"containerId":"c1","netns":"/run/netns/p","ifName":"eth0","podNamespace":"default","podName":"web","podUid":"u1","ips":["10.0.0.2","fd00::2"]}',
    '{"containerId":"c1","netns":"/run/netns/p"}',
    '{"containerId":"c1"}',
    "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u1",
    "K8S_POD_NAME=;=x;;a=b=c",
]:
    write("cni_api", body)

for value in ["for=10.0.0.1", 'for="[fd00::1]"', 'for="[fd00::1]:4711"', "for=10.0.0.1:80",
              "For=192.0.2.43, for=198.51.100.17", "for=unknown", "for=_hidden;proto=https;by=203.0.113.43",
              'for="_gazonk"', "for=", "proto=http;for=10.1.2.3", "\x0a\x00\x00\x01"]:
    write("forwarded_header", value)

spiffe = "spiffe://cluster.local/ns/default/sa/web"
for head in [f"CONNECT\n10.244.1.7:9080\n{spiffe}\nforwarded: for=10.244.0.5",
             f"CONNECT\n[fd00::7]:9080\n{spiffe}\nforwarded: for=\"[fd00::5]\"",
             f"GET\n/index.html\n{spiffe}", "CONNECT\nexample.com:443\nspiffe://td/ns/a/sa/b",
             "CONNECT\n10.0.0.1\nspiffe://td/ns//sa/b", "CONNECT\n10.0.0.1:99999\nspiffe://td/x",
             "POST\nhttp://10.0.0.1:80/x\nhttp://cluster.local/ns/a/sa/b\nforwarded: for=unknown"]:
    write("hbone_connect", head)

for req in ["GET\nweb.shop.svc.cluster.local\n/\n",
            "POST\nweb.shop.svc.cluster.local\n/exact\n",
            "GET\nweb\n/api/v1?debug=1&x=2\nx-user: admin\nx-env: production\n",
            "GET\n10.96.0.20:80\n/ITEMS/123/detail\n",
            "GET\nweb.shop.svc.cluster.local:80\n/static/app.js\nx-absent: 1\nx-forbidden: no\n",
            "DELETE\nWEB.SHOP\n/items/1234567\nx-user: adm\nx-user: admin\n",
            "GET\n*\n?\n"]:
    write("route_match", req)

trace = "4bf92f3577b34da6a3ce929d0e0e4736"
span = "00f067aa0ba902b7"
for h in [f"traceparent: 00-{trace}-{span}-01", f"traceparent: 01-{trace}-{span}-00-extra",
          f"traceparent: ff-{trace}-{span}-01", f"traceparent: 00-{'0' * 32}-{span}-01",
          f"b3: {trace}-{span}-1-{span}", f"b3: {span}-{span}", "b3: 0", "b3: d",
          f"x-b3-traceid: {trace}\nx-b3-spanid: {span}\nx-b3-sampled: 0",
          f"x-b3-traceid: {span}\nx-b3-spanid: {span}\nx-b3-flags: 1", "x-b3-sampled: 0", ""]:
    write("trace_headers", h + "\n")

for t in sorted(os.listdir(CORPUS)):
    print(f"{t}: {len(os.listdir(os.path.join(CORPUS, t)))} files")
