DROP TABLE migrate_notes;
