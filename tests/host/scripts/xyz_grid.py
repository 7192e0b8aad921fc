"""Follows scripts/xyz_grid.py (v1.10.1; 1.6.0 alike): AxisOption, the axis list, and how axes are swept.

`Script.run` converts and confirms each axis's values in the order x, y (z alike), each through
`process_axis`, all before any cell runs; then each cell runs the whole job on a shallow copy of `p`
(so containers such as extra_generation_params are shared between cells) after every axis's `apply`
(`cell`, x first). Cells go y by y, x within (the plot's default with equal axis costs).
"""

from copy import copy

from modules import processing, scripts


class AxisOption:
    def __init__(self, label, type, apply, format_value=None, confirm=None, cost=0.0, choices=None, prepare=None):
        self.label = label
        self.type = type
        self.apply = apply
        self.format_value = format_value
        self.confirm = confirm
        self.cost = cost
        self.choices = choices
        self.prepare = prepare


axis_options = [AxisOption("Nothing", str, lambda p, x, xs: None)]


class Script(scripts.Script):
    def title(self):
        return "X/Y/Z plot"


def grid_cells(results):
    """The pictures the plot puts in its grid: each cell's first image (draw_xyz_grid's `cell` result)."""
    return [processed.images[0] for processed in results]


def process_axis(p, option, values):
    """The axis's values converted to its type, then confirmed (as `process_axis` in `Script.run`)."""
    if option.label == "Nothing":
        return [0]
    values = [option.type(value) for value in values]
    if option.confirm:
        option.confirm(p, values)
    return values


def sweep_xy(p, x_option, x_values, y_option, y_values):
    """Run one generation per (x, y) cell, y by y, after confirming x's values and then y's."""
    xs = process_axis(p, x_option, x_values)
    ys = process_axis(p, y_option, y_values)
    results = []
    for y in ys:
        for x in xs:
            cell = copy(p)
            x_option.apply(cell, x, xs)
            y_option.apply(cell, y, ys)
            results.append(processing.process_images(cell))
    return results


def sweep(p, option, values):
    """Run one generation per value, as the plot does for one axis (the other axis "Nothing")."""
    return sweep_xy(p, option, values, axis_options[0], [0])
