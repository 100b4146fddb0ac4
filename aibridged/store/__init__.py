"""PostgreSQL storage: the only asyncio code in the tree (asyncpg through trio-asyncio)."""

from aibridged.store.db import (
    BudgetStatistics,
    Runner,
    Store,
    StoreBudget,
    StoreStatistics,
    open_store,
    redact_dsn,
)
from aibridged.store.migrate import apply_migrations

__all__ = [
    "BudgetStatistics",
    "Runner",
    "Store",
    "StoreBudget",
    "StoreStatistics",
    "apply_migrations",
    "open_store",
    "redact_dsn",
]
