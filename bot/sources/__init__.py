"""Sources of summaries: fetching a feed's bytes (`fetch`) and parsing them into `Summary` records (`parse`)."""
