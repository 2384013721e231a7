"""`ImageGrid`: tiles in rows and columns, a cursor, and the keys that move it.

`show(infos)` sets the tiles (kept when the keys are the same, so live
updates only restyle them); `set_picture(key, picture)` hands one tile its
picture. The layout follows the room there is: as many columns as tiles of
at least `MIN_TILE` cells fit (at 80 columns: two or three), each tile at
most `MAX_TILE` wide, a picture twice as wide as high in cells (a square
image: a cell is about twice as high as wide) and never taller than the
grid, so one row of tiles always fits. When every tile fits on the screen
with room to spare (a large terminal, a series of a few tries), the tiles
grow instead: the columns are chosen for the largest pictures that still
show every tile without scrolling.

Arrows and h/j/k/l move the cursor; the screen holding the grid does the
rest with `current_key` (pick, open, full screen) and hears of moves
through `ImageGrid.Highlighted`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from textual.binding import Binding, BindingType
from textual.containers import Container, VerticalScroll
from textual.message import Message
from textual.reactive import reactive

from imagen_tui.tui.widgets.image_tile import ImageTile, TileInfo

if TYPE_CHECKING:
    from PIL.Image import Image as Picture
    from textual.app import ComposeResult
    from textual.events import Resize

MIN_TILE = 22  # cells, border included
MAX_TILE = 44
BORDER = 2  # a tile's border: one cell each side (the caption is in the bottom one)


class ImageGrid(VerticalScroll, can_focus=True):
    """Tiles keyed by `TileInfo.key`, with a cursor."""

    DEFAULT_CSS = """
    ImageGrid {
        height: 1fr;
        scrollbar-gutter: stable;
        & > #grid-cells {
            layout: grid;
            grid-gutter: 0;
            height: auto;
        }
        & .tile-empty {
            color: $text-muted;
            padding: 1 2;
        }
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left,h", "move(0, -1)", "Left", show=False),
        Binding("right,l", "move(0, 1)", "Right", show=False),
        Binding("up,k", "move(-1, 0)", "Up", show=False),
        Binding("down,j", "move(1, 0)", "Down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
    ]

    cursor: reactive[int] = reactive(0, init=False)

    class Highlighted(Message):
        """The cursor moved to another tile (or the tiles changed under it)."""

        def __init__(self, grid: ImageGrid, key: str | None) -> None:
            super().__init__()
            self.grid, self.key = grid, key

        @property
        def control(self) -> ImageGrid:
            return self.grid

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._tiles: list[ImageTile] = []
        self.columns = 1

    def compose(self) -> ComposeResult:
        yield Container(id="grid-cells")

    # ----------------------------------------------------------------- reading

    @property
    def keys(self) -> list[str]:
        return [tile.info.key for tile in self._tiles]

    @property
    def tiles(self) -> list[ImageTile]:
        return list(self._tiles)

    @property
    def current_key(self) -> str | None:
        return self._tiles[self.cursor].info.key if self._tiles else None

    @property
    def current_tile(self) -> ImageTile | None:
        return self._tiles[self.cursor] if self._tiles else None

    def tile(self, key: str) -> ImageTile | None:
        return next((tile for tile in self._tiles if tile.info.key == key), None)

    # ----------------------------------------------------------------- writing

    def show(
        self, infos: Sequence[TileInfo], *, pictures: Mapping[str, Picture | None] | None = None
    ) -> None:
        """Show these tiles: the same keys in the same order update in place.

        New tiles start with `pictures[key]` (so each is drawn with its tile,
        not mounted after it); without `pictures`, a key shown before keeps
        its picture."""
        if [info.key for info in infos] == self.keys:
            for tile, info in zip(self._tiles, infos, strict=True):
                tile.update_info(info)
            return
        old = pictures if pictures is not None else {t.info.key: t.picture for t in self._tiles}
        current = self.current_key
        cells = self.query_one("#grid-cells", Container)
        cells.remove_children()
        self._tiles = [ImageTile(info, old.get(info.key)) for info in infos]
        self._layout()
        cells.mount_all(self._tiles)
        keys = self.keys
        cursor = keys.index(current) if current in keys else 0
        self.set_reactive(ImageGrid.cursor, cursor)
        self._mark_current()
        self.post_message(self.Highlighted(self, self.current_key))

    def set_picture(self, key: str, picture: Picture | None) -> None:
        tile = self.tile(key)
        if tile is not None:
            tile.set_picture(picture)

    def set_preview(
        self, key: str, picture: Picture | None, step: int | None, total: int | None
    ) -> None:
        """A running try's latest live preview (shown until its picture comes)."""
        tile = self.tile(key)
        if tile is not None:
            tile.set_preview(picture, step, total)

    def select(self, key: str) -> None:
        """Put the cursor on the tile with this key (if there is one)."""
        if key in self.keys:
            self.cursor = self.keys.index(key)

    # ----------------------------------------------------------------- cursor

    def action_move(self, rows: int, columns: int) -> None:
        if not self._tiles:
            return
        target = self.cursor + rows * self.columns + columns
        if 0 <= target < len(self._tiles):
            self.cursor = target
        elif rows > 0 and self.cursor // self.columns < (len(self._tiles) - 1) // self.columns:
            self.cursor = len(self._tiles) - 1  # down into a shorter last row

    def action_jump(self, index: int) -> None:
        if self._tiles:
            self.cursor = index % len(self._tiles)

    def watch_cursor(self) -> None:
        self._mark_current()
        tile = self.current_tile
        if tile is not None and tile.is_mounted:
            self.scroll_to_widget(tile, animate=False)
        self.post_message(self.Highlighted(self, self.current_key))

    def _mark_current(self) -> None:
        for index, tile in enumerate(self._tiles):
            tile.set_class(index == self.cursor, "-current")

    # ----------------------------------------------------------------- layout

    def on_resize(self, event: Resize) -> None:
        self._layout()

    def _layout(self) -> None:
        width = self.scrollable_content_region.width
        height = self.scrollable_content_region.height
        if width <= 0 or height <= 0:
            return
        count = max(1, len(self._tiles))
        columns = max(1, min(count, width // MIN_TILE))
        tile_width = max(MIN_TILE, min(MAX_TILE, width // columns))
        picture_width = tile_width - BORDER
        picture_height = max(3, picture_width // 2)
        picture_height = min(picture_height, max(3, height - BORDER))
        picture_width = min(picture_width, picture_height * 2)
        roomier = _roomier(count, width, height)
        if roomier is not None and roomier[2] > picture_height:
            columns, tile_width, picture_height = roomier
            picture_width = min(tile_width - BORDER, picture_height * 2)
        self.columns = columns
        cells = self.query_one("#grid-cells", Container)
        cells.styles.grid_size_columns = columns
        cells.styles.grid_columns = str(tile_width)
        cells.styles.grid_rows = str(picture_height + BORDER)
        cells.styles.width = tile_width * columns
        for tile in self._tiles:
            tile.set_picture_size(picture_width, picture_height)


def _roomier(count: int, width: int, height: int) -> tuple[int, int, int] | None:
    """(columns, tile width, picture height) giving the largest square-ish pictures
    with every one of `count` tiles on a `width` x `height` screen; None when they
    cannot all fit at the smallest size."""
    best: tuple[int, int, int] | None = None
    best_key = (0, 0)
    for columns in range(1, count + 1):
        rows = -(-count // columns)
        across = width // columns
        if across < MIN_TILE:
            break
        picture_height = min((across - BORDER) // 2, height // rows - BORDER)
        if picture_height < (MIN_TILE - BORDER) // 2:
            continue
        key = (picture_height, -rows)  # the largest pictures, then the fewest rows
        if best is None or key > best_key:
            best, best_key = (
                (columns, min(across, picture_height * 2 + BORDER), picture_height),
                key,
            )
    return best
