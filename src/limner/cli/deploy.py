"""Putting models to work: `limner serve`, `keys`, `export` and `prune`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from limner.cli.common import BACKEND_CHOICES, BACKEND_HELP, own_captions, user_error
from limner.config import read_config_file


def add_parsers(commands) -> None:
    serve = commands.add_parser("serve", help="serve models over the OpenAI Images API, with a web page at /")
    serve.add_argument("models", nargs="+", metavar="[NAME=]MODEL_DIR[+ADAPTER_DIR[:SCALE]]",
                       help="model folders; the name defaults to the folder's; +ADAPTER_DIR serves the model with an adapter "
                            "from `limner finetune` (under its own NAME)")
    serve.add_argument("--host", default="127.0.0.1", help="listen address; anything beyond loopback needs --api-keys")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--api-keys", default=None, help="key file from `limner keys create`")
    serve.add_argument("--config", default=None, help="a JSON file of ServeConfig values (limits, batching, blocklist)")
    serve.add_argument("--no-batching", action="store_true", help="one request per generator call")
    serve.add_argument("--max-batch-size", type=int, default=None, help="images per generator call")
    serve.add_argument("--backend", choices=BACKEND_CHOICES, default="torch", help=BACKEND_HELP)
    serve.add_argument("--engine", choices=("uvicorn", "ray"), default="uvicorn",
                       help="uvicorn: one process; ray: replicas on Ray Serve, autoscaled (pip install 'limner[ray]')")
    ray = serve.add_argument_group("--engine ray")
    ray.add_argument("--ray-address", default=None, help="join this cluster (HOST:PORT, ray://HOST:PORT or auto); default: start a local one")
    ray.add_argument("--min-replicas", type=int, default=1)
    ray.add_argument("--max-replicas", type=int, default=2)
    ray.add_argument("--target-ongoing-requests", type=float, default=2.0, help="per replica; the autoscaler keeps near it")
    ray.add_argument("--replica-cpus", type=float, default=1.0, help="CPUs reserved for each replica")
    export = commands.add_parser("export", help="export a text-to-image model for fast inference (ONNX)")
    export.add_argument("model_dir")
    export.add_argument("--format", choices=["onnx"], default="onnx")
    export.add_argument("--quantize", choices=["dynamic", "static"], default=None,
                        help="also write the generator in int8 (onnxruntime): dynamic, or static calibrated on the model's own captions")
    export.add_argument("--calibration-captions", default=None,
                        help="static: a text file of captions, one per line (default: the training data's captions)")
    prune = commands.add_parser("prune", help="remove a share of the generator's channels, then distil it from the original")
    prune.add_argument("model_dir")
    prune.add_argument("--amount", type=float, required=True, help="share of each stage's channels to remove, e.g. 0.3")
    prune.add_argument("--output-dir", required=True, help="where the pruned model goes (not the original's folder)")
    prune.add_argument("--distill-minutes", type=float, default=5.0, help="wall-clock budget of the distillation")
    prune.add_argument("--distill-steps", type=int, default=100_000)
    prune.add_argument("--captions", default=None, help="a text file of captions, one per line (default: the training data's)")
    prune.add_argument("--no-progress", action="store_true")
    keys = commands.add_parser("keys", help="create, revoke or list API keys for `limner serve`")
    keys.add_argument("action", choices=["create", "revoke", "list"])
    keys.add_argument("name", nargs="?", help="the key's name (create, revoke)")
    keys.add_argument("--file", required=True, help="the key file (created if absent)")
    keys.add_argument("--rate-limit-per-minute", type=float, default=None, help="create: this key's own limit (default: the server's)")
    keys.add_argument("--rate-limit-burst", type=int, default=None, help="create: this key's own burst (default: the server's)")


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from limner.config import config_from_dict
    from limner.errors import ConfigError
    from limner.pipelines import load_pipeline
    from limner.serving import ServeConfig, create_app
    from limner.serving.connections import raise_open_file_limit, uvicorn_config

    values = read_config_file(args.config) if args.config else {}
    values.update(host=args.host, port=args.port)
    if args.api_keys:
        values["api_keys_file"] = args.api_keys
    if args.no_batching:
        values["batching"] = False
    if args.max_batch_size:
        values["max_batch_size"] = args.max_batch_size
    config = config_from_dict(ServeConfig, values, where=args.config or "serve flags")
    folders = _model_folders(args.models)
    if args.engine == "ray":
        return _run_serve_on_ray(args, folders, config)
    models = {name: load_pipeline(folder, backend=args.backend) for name, folder in folders.items()}
    app = create_app(models, config)
    print(f"limner serving {', '.join(models)} on http://{config.host}:{config.port}/ (API at /v1)")
    raise_open_file_limit(4 * config.max_connections)  # one descriptor per connection, with room to spare
    uvicorn.Server(uvicorn_config(app, config, timeout_graceful_shutdown=30)).run()
    return 0


def _model_folders(specs: list[str]) -> dict[str, str]:
    """NAME=DIR or DIR (named by its folder) -> {name: absolute folder}."""
    from limner.errors import ConfigError

    folders = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        name, folder = (name, folder) if sep else (Path(spec.split("+")[0]).resolve().name, spec)
        if name in folders:
            raise ConfigError(f"two models are named {name!r}; name them with NAME=DIR")
        folders[name] = "+".join(str(Path(part).resolve()) if i == 0 else _absolute_adapter(part) for i, part in enumerate(folder.split("+")))
    return folders


def _absolute_adapter(spec: str) -> str:
    from limner.pipelines.adapters import parse_adapter_spec

    folder, scale = parse_adapter_spec(spec)
    return f"{Path(folder).resolve()}:{scale:g}"


def _run_serve_on_ray(args: argparse.Namespace, folders: dict[str, str], config) -> int:
    import dataclasses

    from limner.serving import ray_engine

    if config.api_keys_file:  # replicas may start elsewhere: absolute paths
        config = dataclasses.replace(config, api_keys_file=str(Path(config.api_keys_file).resolve()))
    ray_config = ray_engine.RayServeConfig(
        address=args.ray_address, min_replicas=args.min_replicas, max_replicas=args.max_replicas,
        target_ongoing_requests=args.target_ongoing_requests, replica_cpus=args.replica_cpus,
    )
    print(f"limner serving {', '.join(folders)} on Ray Serve at http://{config.host}:{config.port}/ (API at /v1), "
          f"{ray_config.min_replicas}-{ray_config.max_replicas} replicas")
    ray_engine.serve_until_interrupted(folders, args.backend, config, ray_config)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from limner.export import export_onnx

    captions = own_captions(args.model_dir, args.calibration_captions, limit=256, flag="--calibration-captions") if args.quantize == "static" else None
    report = export_onnx(args.model_dir, quantize=args.quantize, calibration_captions=captions)
    differences = ", ".join(f"{k.removesuffix('_max_abs_diff')} {v:.1e}" for k, v in report.items() if k.endswith("_max_abs_diff"))
    print(f"wrote {Path(args.model_dir) / 'onnx'} (opset {report['opset']}); largest difference from PyTorch: {differences}")
    if "int8" in report:
        int8 = report["int8"]
        print(f"int8 ({int8['mode']}): mean difference from PyTorch {int8['mean_abs_diff']:.3f}, largest {int8['max_abs_diff']:.3f} "
              "(pixels in [-1, 1]); run it with --backend onnx-int8")
    return 0


def run_prune(args: argparse.Namespace) -> int:
    from limner.training.prune import prune_model

    captions = own_captions(args.model_dir, args.captions, limit=4096, flag="--captions")
    report = prune_model(args.model_dir, args.output_dir, amount=args.amount, captions=captions, distill_minutes=args.distill_minutes,
                         distill_steps=args.distill_steps, progress=not args.no_progress)
    distilled = report["distillation"]
    print(f"pruned {args.amount:.0%} of the channels: {report['parameters_before']:,} -> {report['parameters_after']:,} parameters "
          f"(channels {report['channels_before']} -> {report['channels_after']}); distilled {distilled['steps']} steps in "
          f"{distilled['seconds']:.0f}s, L1 to the original {distilled['l1_to_teacher_first']:.3f} -> {distilled['l1_to_teacher_last']:.3f}")
    print(f"model: {args.output_dir}")
    return 0


def run_keys(args: argparse.Namespace) -> int:
    from limner.serving.keys import create_key, read_key_file, revoke_key

    if args.action in ("create", "revoke") and not args.name:
        return user_error(f"keys {args.action} needs a NAME")
    if args.action == "create":
        key = create_key(Path(args.file), args.name, rate_limit_per_minute=args.rate_limit_per_minute, rate_limit_burst=args.rate_limit_burst)
        print(key)
        print(f"(key {args.name!r} added to {args.file}; only its hash is stored, so keep the key now)", file=sys.stderr)
    elif args.action == "revoke":
        count = revoke_key(Path(args.file), args.name)
        print(f"revoked {count} key(s) named {args.name!r}; a running server notices within a second")
    else:
        for record in read_key_file(Path(args.file)):
            limit = "server limit" if record.rate_limit_per_minute is None else f"{record.rate_limit_per_minute:g}/min"
            print(f"{record.name}\t{'revoked' if record.revoked else 'live'}\t{limit}")
    return 0


COMMANDS = {"serve": run_serve, "export": run_export, "prune": run_prune, "keys": run_keys}
