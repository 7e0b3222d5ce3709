"""Data: raw rows -> conversations -> Gemma's format -> tokens and labels -> packed rows."""
