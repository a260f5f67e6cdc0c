-- +goose Up
CREATE TABLE goose_tags (note_id BIGINT NOT NULL REFERENCES goose_notes (id), tag TEXT NOT NULL);
INSERT INTO goose_notes (id, title) VALUES (1, 'seeded by a migration');

-- +goose Down
DROP TABLE goose_tags;
