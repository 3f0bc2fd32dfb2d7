module realdata

go 1.19
