"""What a reader sees in a plot the code writes: the picture's size in pixels and, panel
by panel, the colours of the series drawn on it. A blank canvas, an empty panel or a
series that was never drawn fails; a PNG header alone would not."""
import numpy as np

DPI = 90  # mobilenet_skip.utils.plots.finish_figure writes every plot at 90 dpi


def pixels(path):
    """The picture at ``path`` as an (H, W, 3) array of 0-255 RGB values."""
    import matplotlib.image
    image = matplotlib.image.imread(path)
    return np.round(image[..., :3] * 255).astype(np.int16)


def count(image, colour, tolerance=24):
    """Pixels of ``image`` within ``tolerance`` (per channel) of a matplotlib colour
    (``"C0"``, ``"#1f77b4"``, an RGB tuple)."""
    import matplotlib.colors
    rgb = np.array(matplotlib.colors.to_rgb(colour)) * 255
    return int((np.abs(image - rgb).max(axis=-1) <= tolerance).sum())


def coloured(image):
    """Pixels of ``image`` in a colour, not white, grey or black: what a series draws,
    where axes, grids and text are neutral."""
    return int((image.max(axis=-1) - image.min(axis=-1) > 60).sum())


def panel(image, panels, row, column):
    """The pixels of panel (``row``, ``column``), from 0, of a ``panels`` (rows, columns)
    grid of equal cells."""
    height, width = image.shape[:2]
    rows, columns = panels
    return image[row * height // rows:(row + 1) * height // rows,
                 column * width // columns:(column + 1) * width // columns]


def check_plot(path, inches, colours=None, panels=(1, 1), least=40, dpi=DPI):
    """Assert that ``path`` is a ``inches`` (width, height) figure at ``dpi`` whose every
    panel of a ``panels`` (rows, columns) grid shows at least ``least`` pixels of each
    of ``colours`` (None: of any colour at all); returns the pixels.

    matplotlib truncates the pixel size (10.2 in x 90 dpi gives 917 px), hence the one
    pixel of slack.
    """
    image = pixels(path)
    height, width = image.shape[:2]
    want = np.array(inches) * dpi
    assert abs(width - want[0]) <= 1 and abs(height - want[1]) <= 1, (
        "%s is %dx%d px, not the %gx%g in figure at %d dpi" % (path, width, height,
                                                                inches[0], inches[1], dpi))
    for r in range(panels[0]):
        for c in range(panels[1]):
            cell = panel(image, panels, r, c)
            if colours is None:
                missing = [] if coloured(cell) >= least else ["any colour"]
            else:
                missing = [colour for colour in colours if count(cell, colour) < least]
            assert not missing, "%s: panel (%d, %d) of %dx%d draws nothing in %s" % (
                path, r + 1, c + 1, panels[0], panels[1], missing)
    return image


def series_colours(n):
    """The colours matplotlib gives the first ``n`` series: ``C0`` ... ``C{n-1}``."""
    return ["C%d" % i for i in range(n)]
