-- +goose Up
CREATE TABLE goose_notes (id BIGINT PRIMARY KEY, title TEXT NOT NULL);

-- +goose Down
DROP TABLE goose_notes;
