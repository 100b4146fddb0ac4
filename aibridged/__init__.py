"""aibridged: a self-hosted AI Gateway on trio.

Layers, highest first; a module imports only from layers below it:

    cli
    daemon / reload
    api / proxy
    providers / mcp
    intercept
    recorder / dump
    store
    records / config / errors / log
"""

__version__ = "0.1.0"
