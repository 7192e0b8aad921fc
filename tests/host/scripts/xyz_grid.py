"""Follows scripts/xyz_grid.py (v1.10.1): AxisOption, the axis list, and how one axis is swept.

A sweep confirms all values first, then for each value runs the whole job on a shallow copy of `p`
(so containers such as extra_generation_params are shared between cells) after `apply`.
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


def sweep(p, option, values):
    """Run one generation per value, as the plot does for one axis."""
    values = [option.type(value) for value in values]
    if option.confirm:
        option.confirm(p, values)
    results = []
    for value in values:
        cell = copy(p)
        option.apply(cell, value, values)
        results.append(processing.process_images(cell))
    return results
