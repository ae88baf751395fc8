"""The master patient index: one person behind many source Patient records (issue 6).

`normalise` turns a source Patient into the comparable demographics matching uses: a checked NHS
number, names, date of birth, sex and postcode in one canonical form each.
"""
