# A plumber API. kiln serves it on $PORT: plumber::pr_run(plumber::pr("plumber.R"),
# host = "0.0.0.0", port = PORT).

#* Say hello
#* @get /
#* @serializer text
function() {
  paste0("Hello from plumber on R ", R.version$major, ".", R.version$minor, ", built by kiln!\n")
}

#* Add two numbers
#* @param a:number
#* @param b:number
#* @get /sum
function(a, b) {
  list(sum = as.numeric(a) + as.numeric(b))
}
