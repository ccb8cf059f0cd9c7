-- Settles and releases change budget totals without locking the budget rows in the transaction
-- that records a result: every result of a team would otherwise queue behind one team-month row.
-- They append deltas here instead; the maintenance loop applies them to budget_accounts.
-- Enforcement stays exact where it matters: holds (which add to a budget) still lock and update
-- budget_accounts in the claiming transaction, and a pending delta can only lower a total (a
-- release) or move money from held to spent, except when a vendor charged more than it quoted.
CREATE TABLE account_deltas (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key          text NOT NULL,
    held_delta   bigint NOT NULL,
    spent_delta  bigint NOT NULL
);
CREATE INDEX account_deltas_key_idx ON account_deltas (key);
