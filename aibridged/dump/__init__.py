"""API dumps (`ai_gateway.api_dump_dir`): each upstream request as sent and its response as it
arrives, written to files for debugging.

`taps` (the request side: a tap per upstream attempt, queuing pieces without waiting), `writer`
(the task writing them in a thread, bounded in bytes, never failing a request), `render` (HTTP
text, credentials masked) and `paths` (where a dump goes, safe whatever the client sent).
"""

from aibridged.dump.taps import Dumps, ExchangeDump, Taps
from aibridged.dump.writer import DumpStatistics, DumpWriter

__all__ = ["DumpStatistics", "DumpWriter", "Dumps", "ExchangeDump", "Taps"]
