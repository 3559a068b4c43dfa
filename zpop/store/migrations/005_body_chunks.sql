-- Bodies in 256 KiB pieces. SQLite reaches an offset inside one large blob
-- by walking its overflow pages from the start, so reading a 20 MB body a
-- chunk at a time cost time quadratic in its size; a piece is one row.
-- The piece size (262144) is also BODY_CHUNK in zpop/store/sqlite.py.

CREATE TABLE body_chunks (
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (message_id, seq)
);

INSERT INTO body_chunks (message_id, seq, data)
WITH RECURSIVE pieces (message_id, seq) AS (
    SELECT message_id, 0 FROM bodies
    UNION ALL
    SELECT p.message_id, p.seq + 1
    FROM pieces p JOIN bodies b ON b.message_id = p.message_id
    WHERE (p.seq + 1) * 262144 < length(b.data)
)
SELECT p.message_id, p.seq, substr(b.data, p.seq * 262144 + 1, 262144)
FROM pieces p JOIN bodies b ON b.message_id = p.message_id;

DROP TABLE bodies;
