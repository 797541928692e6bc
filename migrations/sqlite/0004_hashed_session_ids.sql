-- Session ids are now stored as their SHA-256 (hex), so a copy of the database holds no usable
-- cookie. Rows stored before held the raw id and can no longer be matched: they are deleted,
-- and everyone logs in again once after this upgrade.
DELETE FROM sessions;
