"""A stand-in for a @triton.jit kernel in tests of a launcher: `kernel[grid](*args, **kwargs)`
records the grid and the keyword arguments (constexprs, launch options) and runs nothing."""


class RecordedLaunches:
    def __init__(self):
        self.launches: list[tuple[tuple, dict]] = []  # (grid, keyword arguments), in launch order

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.launches.append((grid, kwargs))

    @property
    def grids(self) -> list[tuple]:
        return [grid for grid, _ in self.launches]
