-- The operator's tenant, region and tags an enrollment token gives the device it enrolls
-- (`ferry server token --tenant T --region R --tag X`), written to its device_tags row in
-- the enrollment's transaction. NULL: the token leaves that field as it is; '' clears it;
-- `tags` is comma-separated.
ALTER TABLE enrollment_tokens ADD COLUMN tenant TEXT;
ALTER TABLE enrollment_tokens ADD COLUMN region TEXT;
ALTER TABLE enrollment_tokens ADD COLUMN tags TEXT;
