"""The sweep's plotting actors (tuner/review/plotter.py): they draw a study's plots as
tuner/review/plots.py does, in turn, and a lost actor costs the study its plots, not its end."""
import ray

from kernelevolve.tuner.review import plots
from kernelevolve.tuner.review.plotter import CLOSED, Plotters
from test_report import _records


def test_plotters_draw_what_the_plots_module_draws_each_actor_in_turn(local_ray):
    plotters = Plotters(2)
    try:
        assert ray.get([a.ready.remote() for a in plotters.actors]) == [True, True]  # started, warmed up
        records = _records(8)
        pngs, notes = plotters.draw(records, "matmul/M4096/h100", "h100", "gpu", "bfloat16")
        want_pngs, want_notes = plots.render_study(records, "matmul/M4096/h100", "h100", "gpu", "bfloat16")
        assert set(pngs) == set(want_pngs) == {"convergence.png", "param_importance.png",
                                               "latency_by_status.png", "roofline.png"}
        assert all(p.startswith(b"\x89PNG") for p in pngs.values()) and notes == want_notes
        # the second draw goes to the other actor; an interpreter study's roofline is a note
        _, notes = plotters.draw(_records(2), "s", "h100", "interpreter", "bfloat16")
        assert notes["roofline.png"] == plots.INTERPRETER_SKIP
    finally:
        plotters.close()
    assert plotters.actors == []


def test_a_lost_plotter_costs_the_study_its_plots_not_its_end(local_ray):
    plotters = Plotters(1)
    try:
        ray.get(plotters.actors[0].ready.remote())
        ray.kill(plotters.actors[0], no_restart=True)
        pngs, notes = plotters.draw(_records(8), "s", "h100", "gpu", "bfloat16")
        assert pngs == {} and notes["error"].startswith("plots failed to draw: ")
    finally:
        plotters.close()


def test_a_study_ending_while_the_sweep_stops_keeps_its_end(local_ray):
    """A stopping sweep closes its plotters while a study's end may still draw: the draw says so,
    and raises nothing that would fail the study's end."""
    plotters = Plotters(1)
    plotters.close()
    pngs, notes = plotters.draw(_records(4), "s", "h100", "gpu", "bfloat16")
    assert pngs == {} and notes == {"error": CLOSED}
