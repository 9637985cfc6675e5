#!/usr/bin/env python3
"""Starts, reuses and stops the local test bed: etcd, kube-apiserver and
kube-controller-manager (built from their Go modules by build.sh), and the ECS endpoint
(moto's server, see ecs_endpoint.py), all on free loopback ports.

    testenv.py up     start (or reuse) everything, install crds/, write .testenv/env
    testenv.py down   stop everything and remove its state

Runs with the project virtualenv's Python (it uses `cryptography`, a moto dependency, to
make the certificates). State lives in .testenv/ (git-ignored): pids, logs, certificates,
the kubeconfig and `env`, a shell-sourceable file with everything a client needs.
"""
import datetime
import fcntl
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".testenv"
BIN = STATE / "bin"
VENV = STATE / "venv"
PKI = STATE / "pki"
LOGS = STATE / "logs"
RUN = STATE / "run.json"
ENV_FILE = STATE / "env"
KUBECONFIG = STATE / "kubeconfig"
REGION = "us-east-1"


def log(msg):
    print(f"testenv: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- certificates
def _key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path, key):
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))


def _write_cert(path, cert):
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _cert(subject, issuer, key, issuer_key, *, ca=False, sans=None, client=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if not ca:
        usage = x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH if client else x509.oid.ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki():
    """A CA, the apiserver's serving cert, an admin client cert (system:masters) and the
    service-account signing key pair."""
    if (PKI / "admin.crt").exists():
        return
    PKI.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ecs-operator-testenv-ca")])
    ca = _cert(ca_name, ca_name, ca_key, ca_key, ca=True)
    _write_key(PKI / "ca.key", ca_key)
    _write_cert(PKI / "ca.crt", ca)

    import ipaddress
    serving_key = _key()
    serving = _cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]), ca_name,
                    serving_key, ca_key,
                    sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    _write_key(PKI / "apiserver.key", serving_key)
    _write_cert(PKI / "apiserver.crt", serving)

    admin_key = _key()
    admin = _cert(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                             x509.NameAttribute(NameOID.COMMON_NAME, "testenv-admin")]),
                  ca_name, admin_key, ca_key, client=True)
    _write_key(PKI / "admin.key", admin_key)
    _write_cert(PKI / "admin.crt", admin)

    sa_key = _key()
    _write_key(PKI / "sa.key", sa_key)
    (PKI / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def write_kubeconfig(port):
    import base64
    b64 = lambda p: base64.b64encode((PKI / p).read_bytes()).decode()
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "testenv",
        "clusters": [{"name": "testenv", "cluster": {
            "server": f"https://127.0.0.1:{port}", "certificate-authority-data": b64("ca.crt")}}],
        "users": [{"name": "admin", "user": {
            "client-certificate-data": b64("admin.crt"), "client-key-data": b64("admin.key")}}],
        "contexts": [{"name": "testenv", "context": {"cluster": "testenv", "user": "admin",
                                                     "namespace": "default"}}],
    }
    KUBECONFIG.write_text(json.dumps(config, indent=2))


# ---------------------------------------------------------------- processes
def spawn(name, argv, env=None):
    LOGS.mkdir(parents=True, exist_ok=True)
    out = open(LOGS / f"{name}.log", "ab")
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, **(env or {})})
    return proc.pid


def wait_for(what, check, timeout=120):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as err:  # noqa: BLE001 - any failure means "not yet"
            last = err
        time.sleep(0.2)
    raise SystemExit(f"testenv: {what} did not come up within {timeout}s ({last}); see {LOGS}")


def https_ok(port, path):
    ctx = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
    ctx.load_cert_chain(str(PKI / "admin.crt"), str(PKI / "admin.key"))
    with urllib.request.urlopen(f"https://127.0.0.1:{port}{path}", context=ctx, timeout=5) as r:
        return r.status == 200


def http_ok(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status < 500


def kubectl(*args, check=True, capture=False):
    return subprocess.run([str(BIN / "kubectl"), "--kubeconfig", str(KUBECONFIG), *args],
                          check=check, text=True,
                          stdout=subprocess.PIPE if capture else None)


def code_version():
    """A digest of the test bed's own code and the CRD-independent binaries it runs: a
    running test bed started from other code is restarted, not reused."""
    import hashlib
    digest = hashlib.sha256()
    for path in sorted((ROOT / "tests" / "testenv").glob("*.py")):
        digest.update(path.read_bytes())
    for name in ("etcd", "kube-apiserver", "kube-controller-manager"):
        digest.update(str((BIN / name).resolve()).encode())
    return digest.hexdigest()


def running():
    """The recorded run, if it runs this code, all its processes are alive and the
    apiserver answers."""
    if not RUN.exists():
        return None
    run = json.loads(RUN.read_text())
    if run.get("code") != code_version() or not all(alive(pid) for pid in run["pids"].values()):
        return None
    try:
        if https_ok(run["apiserver_port"], "/readyz") and http_ok(f"http://127.0.0.1:{run['ecs_port']}/moto-api/data.json"):
            return run
    except Exception:  # noqa: BLE001
        return None
    return None


def apiserver_argv(etcd_client, api_port):
    return [
        str(BIN / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{etcd_client}",
        f"--secure-port={api_port}", "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
        f"--tls-cert-file={PKI / 'apiserver.crt'}", f"--tls-private-key-file={PKI / 'apiserver.key'}",
        f"--client-ca-file={PKI / 'ca.crt'}",
        "--service-cluster-ip-range=10.0.0.0/24", "--authorization-mode=RBAC",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={PKI / 'sa.pub'}",
        f"--service-account-signing-key-file={PKI / 'sa.key'}",
        "--disable-admission-plugins=ServiceAccount",
        f"--cert-dir={STATE / 'apiserver-certs'}", "--v=0"]


def start():
    make_pki()
    etcd_client, etcd_peer = free_port(), free_port()
    api_port, ecs_port = free_port(), free_port()
    data = STATE / "etcd-data"
    shutil.rmtree(data, ignore_errors=True)
    pids = {}
    pids["etcd"] = spawn("etcd", [
        str(BIN / "etcd"), "--data-dir", str(data), "--name", "testenv",
        "--listen-client-urls", f"http://127.0.0.1:{etcd_client}",
        "--advertise-client-urls", f"http://127.0.0.1:{etcd_client}",
        "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
        "--initial-cluster", f"testenv=http://127.0.0.1:{etcd_peer}",
        "--unsafe-no-fsync", "--log-level", "warn"])
    wait_for("etcd", lambda: http_ok(f"http://127.0.0.1:{etcd_client}/health"))
    pids["kube-apiserver"] = spawn("kube-apiserver", apiserver_argv(etcd_client, api_port))
    write_kubeconfig(api_port)
    pids["ecs-endpoint"] = spawn("ecs-endpoint", [
        str(VENV / "bin" / "python"), str(ROOT / "tests" / "testenv" / "ecs_endpoint.py"),
        "--port", str(ecs_port)])
    wait_for("kube-apiserver", lambda: https_ok(api_port, "/readyz"), timeout=180)
    pids["kube-controller-manager"] = spawn("kube-controller-manager", [
        str(BIN / "kube-controller-manager"), f"--kubeconfig={KUBECONFIG}",
        "--controllers=namespace,garbagecollector", "--leader-elect=false", "--secure-port=0",
        f"--service-account-private-key-file={PKI / 'sa.key'}", "--v=0"])
    wait_for("ECS endpoint", lambda: http_ok(f"http://127.0.0.1:{ecs_port}/moto-api/data.json"))
    run = {"pids": pids, "apiserver_port": api_port, "ecs_port": ecs_port, "etcd_port": etcd_client,
           "code": code_version()}
    RUN.write_text(json.dumps(run, indent=2))
    return run


def install_crds():
    kubectl("apply", "--server-side", "--force-conflicts", "-k", str(ROOT / "crds"),
            "--field-manager=testenv")
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")


def write_env(run):
    values = {
        "KUBECONFIG": str(KUBECONFIG),
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{run['ecs_port']}",
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }
    lines = [f"export {k}={json.dumps(v)}" for k, v in values.items()]
    ENV_FILE.write_text("\n".join(lines) + "\n")


def up():
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several test binaries may ask at once
        run = running()
        if run:
            log(f"reusing the running test bed (apiserver :{run['apiserver_port']}, ECS :{run['ecs_port']})")
        else:
            stop()
            run = start()
            log(f"started apiserver :{run['apiserver_port']}, ECS endpoint :{run['ecs_port']}")
        install_crds()
        write_env(run)
    log(f"ready: source {ENV_FILE}")


def stop():
    operator = STATE / "operator.pid"  # started by demo.sh
    if operator.exists():
        try:
            os.kill(int(operator.read_text().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            pass
        operator.unlink()
    if RUN.exists():
        run = json.loads(RUN.read_text())
        for pid in run["pids"].values():
            try:
                os.killpg(pid, signal.SIGTERM)
            except OSError:
                pass
        deadline = time.monotonic() + 15
        while any(alive(p) for p in run["pids"].values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in run["pids"].values():
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        RUN.unlink()
    shutil.rmtree(STATE / "etcd-data", ignore_errors=True)
    ENV_FILE.unlink(missing_ok=True)


def restart_apiserver():
    """Stops kube-apiserver (every watch breaks, every call fails) and starts it again on
    the same port and etcd, for tests of recovery. Blocks until it is ready again."""
    with open(STATE / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        run = json.loads(RUN.read_text())
        pid = run["pids"]["kube-apiserver"]
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)
        port = run["apiserver_port"]
        wait_for("the old kube-apiserver to release its port", lambda: not https_port_open(port), timeout=30)
        run["pids"]["kube-apiserver"] = spawn("kube-apiserver", apiserver_argv(run["etcd_port"], port))
        RUN.write_text(json.dumps(run, indent=2))
        wait_for("kube-apiserver", lambda: https_ok(port, "/readyz"), timeout=180)
    log(f"restarted kube-apiserver :{port}")


def https_port_open(port):
    import socket
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else "up"
    if cmd == "up":
        up()
    elif cmd == "down":
        stop()
        log("stopped")
    elif cmd == "restart-apiserver":
        restart_apiserver()
    else:
        raise SystemExit(f"usage: {sys.argv[0]} up|down|restart-apiserver")


if __name__ == "__main__":
    main()
