-- The name a provider was seeded under: a seeded provider renamed through the API is still found
-- by its seed (and not seeded again under the old name).
ALTER TABLE ai_providers ADD COLUMN seed_name text;
UPDATE ai_providers SET seed_name = name WHERE source IN ('seed', 'demo');
