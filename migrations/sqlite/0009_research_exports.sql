-- Research exports (FHIR Bulk Data). Everything about a job and a study's
-- export secrets is sealed under a key derived from the root key; in the
-- clear only an opaque id (a random job id, or a hash of the study id).

-- Export jobs, so that a job survives a restart and a lock.
CREATE TABLE export_jobs (
    job_id TEXT PRIMARY KEY,
    body   BLOB NOT NULL
);

-- Each study's pseudonym and date shift, drawn at random once.
CREATE TABLE study_secrets (
    digest BLOB PRIMARY KEY,
    body   BLOB NOT NULL
);
