"""The experiment loader, fuzzed: any malformed file gives a ConfigError (one clear message,
exit code 2 from the CLI), never a traceback."""
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernelevolve.tuner.experiment import config
from kernelevolve.tuner.cli import build_parser, main

GOOD = {"name": "t",
        "kernels": [{"kernel": "matmul", "problems": [{"M": 100, "N": 72, "K": 130, "dtype": "float16"}]}],
        "targets": [{"name": "cpu-interpreter"}],
        "search": {"sampler": "tpe", "samples": 4, "concurrency": 2, "seed": 0},
        "tracking": {"uri": "sqlite:///mlflow.db"}}

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=10), st.integers()), inner, max_size=4)),
    max_leaves=12)
PATHS = [("name",), ("kernels",), ("kernels", 0), ("kernels", 0, "kernel"), ("kernels", 0, "problems"),
         ("kernels", 0, "problems", 0), ("kernels", 0, "problems", 0, "M"),
         ("kernels", 0, "problems", 0, "dtype"), ("targets",), ("targets", 0), ("targets", 0, "name"),
         ("targets", 0, "resources"), ("search",), ("search", "sampler"), ("search", "samples"),
         ("search", "concurrency"), ("search", "timeout_s"), ("tracking",), ("tracking", "uri"), ("extra",)]


def _mutate(path, value):
    import copy
    doc = copy.deepcopy(GOOD)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def _load_text(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("fuzz") / "exp.yaml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    try:
        config.load(str(p))
    except config.ConfigError as exc:
        msg = str(exc)
        assert msg.startswith(str(p)) and len(msg.splitlines()) == 1, msg
        return "error"
    return "ok"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), value=values)
def test_mutated_fields_load_or_fail_cleanly(tmp_path_factory, path, value):
    text = yaml.safe_dump(_mutate(path, value), allow_unicode=True)
    _load_text(tmp_path_factory, text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=values)
def test_arbitrary_documents_fail_cleanly(tmp_path_factory, doc):
    _load_text(tmp_path_factory, yaml.safe_dump(doc, allow_unicode=True))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_fail_cleanly(tmp_path_factory, raw):
    _load_text(tmp_path_factory, raw)


def test_yaml_is_loaded_safely(tmp_path, capsys):
    p = tmp_path / "evil.yaml"
    p.write_text("name: !!python/object/apply:os.system ['echo pwned > %s/pwned']\n" % tmp_path)
    assert main(["run", str(p)]) == 2
    assert not (tmp_path / "pwned").exists()
    assert "not valid YAML" in capsys.readouterr().err


def test_servers_bind_loopback_by_default():
    args = build_parser().parse_args(["ui"])
    assert args.host == "127.0.0.1"
