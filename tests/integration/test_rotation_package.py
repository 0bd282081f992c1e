"""The rotation handler as Lambda runs it: from the packaged files (the smoke function's archive,
smoke_function.package_files) in a clean interpreter that has only those and the runtime's SDK."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from infra.components.rotation import HANDLER
from infra.components.smoke_function import package_files
from tests.integration.test_vpc_smoke_handler import runtime_sdk, stage

CHILD = """
import json, sys
sys.path[:0] = [{task!r}, {sdk!r}]
module_name, name = {handler!r}.rsplit(".", 1)
module = __import__(module_name, fromlist=[name])
assert callable(getattr(module, name))
config = module.RotationConfig.from_json({config!r})
backend = module.backend_for(config, sm=None)
client = module.redis_connect(tls=False, ca_cert_pem=None)  # builds a client factory: imports redis lazily
import redis, boto3
print(json.dumps({{"modules": sorted(m.__file__ or "" for m in (module, redis, boto3)), "path": sys.path,
                  "backend": type(backend).__name__}}))
"""


def test_the_packaged_handler_imports_from_the_archive_and_the_sdk_alone(tmp_path: Path) -> None:
    task = tmp_path / "task"
    stage(package_files(), task)
    sdk = runtime_sdk(tmp_path / "sdk")
    config = json.dumps({"target": "sentinel", "secrets": {"arn:app": "app", "arn:admin": "admin"},
                         "nodes": ["10.0.0.1:6379"], "sentinels": ["10.0.0.1:26379"], "adminSecretArn": "arn:admin"})
    code = CHILD.format(task=str(task), sdk=str(sdk), handler=HANDLER, config=config)
    # -I -S: no site-packages, no PYTHON* variables, no user site.
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=task, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not any("site-packages" in p for p in result["path"]), result["path"]
    files = set(result["modules"])
    assert str(task / "redisops" / "rotation.py") in files and str(task / "redis" / "__init__.py") in files
    assert any(f.startswith(str(sdk)) for f in files)  # boto3 from the runtime's SDK
    assert result["backend"] == "SentinelBackend"
