-- 0005: the smoke-test exam year's partition.
--
-- CD's smoke tests and the synthetic load it drives at quiet candidates
-- write and read only in 2099, a year no real result uses
-- (.github/promote: SMOKE_EXAM_YEAR). Its partition exists in every
-- environment from the migrations on, so a write rollout never fails on a
-- missing partition. The smoke tests delete their rows again.
--
-- Idempotent: ensure_exam_year_partition() is a no-op for an existing partition.
BEGIN;

SELECT ensure_exam_year_partition(2099);

INSERT INTO schema_migrations (version) VALUES ('0005_smoke_partition') ON CONFLICT DO NOTHING;

COMMIT;
