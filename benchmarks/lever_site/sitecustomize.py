# Put on PYTHONPATH with BENCH_LEVERS="name=value,..." to switch engine.train.speed.LEVERS in every process started
# with it: the trainer that `lorapilot train` spawns too, which a benchmark cannot reach otherwise
# (benchmarks/user_path.py's lever sides). benchmarks/profile_step.py calls switch_levers in its own process.
import os


def switch_levers(spec: str) -> None:
    from engine.train import speed

    for item in filter(None, spec.split(",")):
        name, _, value = item.partition("=")
        default = getattr(speed.LEVERS, name)  # an unknown lever fails loudly, not silently measured as the default
        if isinstance(default, bool):
            setattr(speed.LEVERS, name, value.lower() in ("1", "true", "on"))
        else:
            setattr(speed.LEVERS, name, int(value) if default is None else type(default)(value))


if os.environ.get("BENCH_LEVERS"):
    switch_levers(os.environ["BENCH_LEVERS"])
