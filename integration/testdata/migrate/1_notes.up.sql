CREATE TABLE migrate_notes (id BIGINT PRIMARY KEY, title TEXT NOT NULL);
INSERT INTO migrate_notes (id, title) VALUES (1, 'seeded');
