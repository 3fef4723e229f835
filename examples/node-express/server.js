// An Express app: kiln's Node.js buildpack runs `npm ci`, keeps the dependencies in their
// own layer and starts `node server.js` (the start script) on $PORT.
const express = require("express");

const app = express();
const port = process.env.PORT || 8080;

app.get("/", (req, res) => {
  res.type("text").send(`Hello from Express on Node.js ${process.version}, built by kiln!\n`);
});

app.listen(port, () => console.log(`listening on :${port}`));
