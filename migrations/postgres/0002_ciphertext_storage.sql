-- Record bodies are ciphertext: compressing them is wasted work, so store
-- them out of line without trying.
ALTER TABLE events ALTER COLUMN body SET STORAGE EXTERNAL;
