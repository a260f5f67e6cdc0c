-- +goose Up
CREATE TABLE goose_tags (note_id BIGINT NOT NULL REFERENCES goose_notes (id), tag TEXT NOT NULL,);

-- +goose Down
DROP TABLE goose_tags;
