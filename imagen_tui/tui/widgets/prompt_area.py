"""`PromptArea`: the Compose form's prompt, a TextArea that walks the prompt history.

Up on the first line asks for an older prompt, down on the last line (while
an earlier prompt is shown) for a newer one: the area posts
`PromptArea.HistoryStep` and the screen, which holds the history (read from
the database in a thread worker), sets the text. Anywhere else the arrows
move the cursor as in any TextArea.
"""

from __future__ import annotations

from textual.message import Message
from textual.widgets import TextArea


class PromptArea(TextArea):
    browsing = False  # an earlier prompt is shown (set by the screen)

    class HistoryStep(Message):
        """The user asked for an older (`older`) or newer prompt."""

        def __init__(self, area: PromptArea, older: bool) -> None:
            super().__init__()
            self.area, self.older = area, older

        @property
        def control(self) -> PromptArea:
            return self.area

    def action_cursor_up(self, select: bool = False) -> None:
        if not select and self.cursor_location[0] == 0:
            self.post_message(self.HistoryStep(self, older=True))
            return
        super().action_cursor_up(select)

    def action_cursor_down(self, select: bool = False) -> None:
        last = self.document.line_count - 1
        if not select and self.browsing and self.cursor_location[0] >= last:
            self.post_message(self.HistoryStep(self, older=False))
            return
        super().action_cursor_down(select)
