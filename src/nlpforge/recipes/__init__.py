"""Training loops (one file per recipe). The library never imports them; the CLI does."""
