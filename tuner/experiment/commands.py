"""`kernelevolve kernels`: the kernels an experiment can name, and each one's search space for a
problem on a target.

Here, beside the registry and the hardware profiles it reads; tuner/cli.py parses the command line
and dispatches. Nothing heavy is imported at the top: `kernelevolve --help` imports this module.
"""
from __future__ import annotations

import json
import os

from kernelevolve.tuner.user_errors import UserError


def _example_problem(problem_cls, given: str | None) -> dict:
    if given:
        try:
            data = json.loads(given)
        except ValueError as exc:
            raise UserError(f"--problem: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise UserError("--problem: a JSON object, e.g. '{\"rows\": 4096, \"cols\": 1000}'")
        return data
    return {k: (1024 if f.is_required() else f.default) for k, f in problem_cls.model_fields.items()}


def cmd_kernels(args) -> int:
    from pydantic import ValidationError

    from kernelevolve.tuner.experiment import hardware, registry

    if args.target not in hardware.PROFILES:
        raise UserError(f"unknown target '{args.target}': known are {', '.join(hardware.PROFILES)}")
    hw = hardware.profile(args.target)
    if args.kernel:  # one kernel: a built-in name, path/to/file.py:OBJECT or package.module:OBJECT
        try:
            refs = {args.kernel: registry.resolve_ref(args.kernel, os.getcwd())}
        except registry.KernelNotFound as exc:
            raise UserError(str(exc)) from None
    else:
        refs = dict(sorted(registry.BUILTIN.items()))
    for name, ref in refs.items():
        try:
            tunable = registry.load(ref)
        except registry.KernelNotFound as exc:
            raise UserError(str(exc)) from None
        spec = tunable.kernel
        fields = spec.problem.model_fields
        example = _example_problem(spec.problem, args.problem)
        try:
            problem = spec.problem(**example)
        except (ValidationError, TypeError) as exc:
            first = str(exc).replace("\n", " ")[:300]
            raise UserError(f"{name}: the problem {example} is not one of its problems ({first}); "
                            f"give one with --problem (fields {', '.join(fields)})") from None
        sp = tunable.space(problem, hw)
        print(f"{name}: {spec.description}")
        print(f"  problem fields: {', '.join(fields)}   (space shown for {example} on {hw.name})")
        for d in sp.describe():
            print(f"  {d['name']:<12} {d['kind']:<8} {d['values']}")
        for c in sp.constraints:
            print(f"  constraint: {getattr(c, '__doc__', None) or c}")
        if sp.notes:
            print(f"  notes: {sp.notes}")
        print(f"  {sp.size()} points before constraints\n")
    return 0
