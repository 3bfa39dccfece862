"""The pure core: parsing, stages, diff, rules, time decisions and rendering, with no clock, sockets or database."""
